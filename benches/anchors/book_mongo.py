"""The book's extract_mongodb.py, as written there, against the bench collection.

find() with the event_timestamp window and batch_size=3000, every event appended to a
list (`all_events`), then csv.writer(delimiter='|') to a file. Prints one line in the
format of benches/mongo.rs.
Usage: python book_mongo.py URI DATABASE COLLECTION OUT_FILE
"""
import csv
import datetime
import resource
import sys
import time

from pymongo import MongoClient

uri, database, collection, out = sys.argv[1:5]
t0 = time.time()
client = MongoClient(uri)
coll = client[database][collection]
start_date = datetime.datetime(2020, 1, 1)
end_date = datetime.datetime(2030, 1, 1)
mongo_query = {"$and": [{"event_timestamp": {"$gte": start_date}},
                        {"event_timestamp": {"$lt": end_date}}]}
event_docs = coll.find(mongo_query, batch_size=3000)
all_events = []
for doc in event_docs:
    event_id = str(doc.get("event_id", -1))
    event_timestamp = doc.get("event_timestamp", None)
    event_name = doc.get("event_name", None)
    all_events.append([event_id, event_timestamp, event_name])
with open(out, "w") as fp:
    csvw = csv.writer(fp, delimiter="|")
    csvw.writerows(all_events)
wall = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"book python (pymongo)    wall {wall:6.2f} s  peak {peak:6} MiB  ({len(all_events)} rows, {len(all_events) / wall:.0f} rows/s)")
