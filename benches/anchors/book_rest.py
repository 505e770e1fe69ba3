"""The book's REST job, paginated: requests.get each page, flatten each item, csv.writer('|')."""
import csv
import sys
import time

import requests

url, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
n = 0
with open(out, "w", newline="") as fp:
    w = csv.writer(fp, delimiter="|")
    offset = 0
    while True:
        r = requests.get(url, params={"offset": offset, "limit": 1000})
        r.raise_for_status()
        items = r.json()["data"]
        if not items:
            break
        for i in items:
            w.writerow([i["id"], i["name"], i["lat"], i["lon"], i["duration"], i["risetime"]])
        n += len(items)
        if len(items) < 1000:
            break
        offset += 1000
wall = time.perf_counter() - t
print(f"python requests (book) wall {wall:6.2f} s  {n / wall:9.0f} items/s")
