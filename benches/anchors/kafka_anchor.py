"""The Python a book reader would write for the Kafka jobs, with confluent-kafka (PyPI;
its wheel bundles a current librdkafka): `consume` reads a topic of Debezium envelopes to
its end and writes `op|col|col...` lines with csv.writer (values as the JSON has them:
no decoding of base64 decimals or epoch-microsecond timestamps, which is less work than
tributary does); `produce` sends the lines of a file as messages and waits for every
acknowledgement.

Usage: kafka_anchor.py consume BOOTSTRAP TOPIC OUT | produce BOOTSTRAP TOPIC IN
"""
import csv
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

OPS = {"c": "insert", "u": "update", "d": "delete", "r": "snapshot", "t": "truncate"}


def consume(bootstrap, topic, out):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"anchor-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    c.subscribe([topic])
    n = 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f, delimiter="|")
        while True:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                raise SystemExit(str(m.error()))
            if m.value() is not None:
                v = json.loads(m.value())
                p = v.get("payload", v)
                row = p["after"] if p["op"] != "d" else p["before"]
                w.writerow([OPS[p["op"]]] + list(row.values()))
                n += 1
            if m.offset() + 1 >= high:
                break
    c.commit(asynchronous=False)
    c.close()
    print(n)


def produce(bootstrap, topic, inp):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    with open(inp, "rb") as f:
        for line in f:
            while True:
                try:
                    p.produce(topic, line.rstrip(b"\n"))
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
    p.flush(60)


if __name__ == "__main__":
    mode, bootstrap, topic, path = sys.argv[1:5]
    (consume if mode == "consume" else produce)(bootstrap, topic, path)
