"""Binlog CDC in the style of the book's mysql_binlog.py (python-mysql-replication): row events
of one table, one '|' row per event (action + values), read from FILE:POS to the end of the log.
The same as ../shared/bench/anchors/book_binlog.py, with the server given on the command line."""
import csv, sys
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
host, port, user, passwd, log_file, log_pos, table, out = sys.argv[1:9]
stream = BinLogStreamReader(
    connection_settings={"host": host, "port": int(port), "user": user, "passwd": passwd},
    server_id=100, only_events=[DeleteRowsEvent, WriteRowsEvent, UpdateRowsEvent],
    log_file=log_file, log_pos=int(log_pos), resume_stream=True, blocking=False)
n = 0
with open(out, "w", newline="") as fp:
    w = csv.writer(fp, delimiter="|")
    for ev in stream:
        if ev.table != table:
            continue
        for row in ev.rows:
            if isinstance(ev, WriteRowsEvent):
                w.writerow(["insert", *row["values"].values()])
            elif isinstance(ev, UpdateRowsEvent):
                w.writerow(["update", *row["after_values"].values()])
            else:
                w.writerow(["delete", *row["values"].values()])
            n += 1
stream.close()
print(n, "events")
