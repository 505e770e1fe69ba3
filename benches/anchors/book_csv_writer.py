"""The book's way to write an extract: csv.writer(fp, delimiter='|') over row tuples.

Generates the same 10-column orders rows as benches/csv_encode.rs (values built first,
not timed), then times csv.writer writing them to an in-memory buffer, in chunks of
8192 rows like the Rust bench. Prints one line in the bench's format.
"""
import csv
import io
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
STATUS = ["Backordered", "Shipped", "Pending", "Cancelled"]
CURRENCY = ["USD", "EUR", "KRW"]
T2020 = datetime(2020, 1, 1)
T0601 = datetime(2020, 6, 1, tzinfo=timezone.utc)

timed = 0.0
out_bytes = 0
start = 1
while start <= rows:
    n = min(8192, rows + 1 - start)
    chunk = []
    for i in range(start, start + n):
        chunk.append((
            i, (i * 7919) % 100000, STATUS[i % 4], Decimal((i * 31) % 1000000) / 100, CURRENCY[i % 3],
            None if i % 3 == 0 else f'note for order {i} with | pipe, "quote" and comma',
            i % 10 == 0, T2020 + timedelta(seconds=i), T0601 + timedelta(seconds=i),
            None if i % 5 == 0 else json.dumps({"sku": f"SKU-{i % 997}", "qty": 1 + i % 9, "tags": ["a", "b"]}),
        ))
    buf = io.StringIO()
    t = time.perf_counter()
    csv.writer(buf, delimiter="|").writerows(chunk)
    timed += time.perf_counter() - t
    out_bytes += len(buf.getvalue().encode())
    start += n

print(f"{'python csv.writer (book)':<28} {timed:>9.3f} s {rows / timed:>12.0f} rows/s "
      f"{out_bytes / 1e6 / timed:>9.1f} MB/s {out_bytes / 1e6:>9.1f} MB out")
