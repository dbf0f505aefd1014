#!/usr/bin/env python3
"""An independent peer for the classic wire format of Redis in Action 6.6.

Written from the wire-format description in docs/classic.md (and the
book), not from our Rust code, so the interoperability tests in
tests/classic.rs compare two implementations. It behaves like the book's
Python: the sender APPENDs 128 KiB blocks and announces each file in a chat
message; the receiver advances its position before processing (the book's
order), reads with GETRANGE until a short block and INCRs `<C><F>:done`.

    book_peer.py send       REDIS_URL CHANNEL COUNT DIR
    book_peer.py receive    REDIS_URL CHANNEL ID OUT_DIR
    book_peer.py import-geo REDIS_URL BLOCKS_CSV LOCATIONS_CSV

The receiver writes each file's bytes to OUT_DIR/<name>, and for names
ending in .gz also the gunzipped text to OUT_DIR/<name>.text.
"""

import csv
import gzip
import io
import json
import os
import sys
import time
import uuid

import redis

BLOCK = 2 ** 17


def acquire_lock(conn, name, timeout=10):
    identifier = str(uuid.uuid4())
    end = time.time() + timeout
    while time.time() < end:
        if conn.setnx('lock:' + name, identifier):
            return identifier
        time.sleep(0.001)
    raise RuntimeError("couldn't get the lock " + name)


def release_lock(conn, name, identifier):
    with conn.pipeline(True) as pipe:
        while True:
            try:
                pipe.watch('lock:' + name)
                if pipe.get('lock:' + name) == identifier.encode():
                    pipe.multi()
                    pipe.delete('lock:' + name)
                    pipe.execute()
                    return True
                pipe.unwatch()
                return False
            except redis.exceptions.WatchError:
                pass


def send_message(conn, chat, sender, message):
    identifier = acquire_lock(conn, 'chat:' + chat)
    try:
        mid = conn.incr('ids:' + chat)
        packed = json.dumps({'id': mid, 'ts': time.time(), 'sender': sender, 'message': message})
        conn.zadd('msgs:' + chat, {packed: mid})
    finally:
        release_lock(conn, 'chat:' + chat, identifier)


def send(conn, chat, count, directory):
    recipients = [str(i) for i in range(count)] + ['source']
    pipe = conn.pipeline(True)
    pipe.zadd('chat:' + chat, {r: 0 for r in recipients})
    for r in recipients:
        pipe.zadd('seen:' + r, {chat: 0})
    pipe.execute()
    send_message(conn, chat, 'source', '')
    names = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            while True:
                block = f.read(BLOCK)
                if not block:
                    break
                conn.append(chat + name, block)
        send_message(conn, chat, 'source', name)
        names.append(name)
    send_message(conn, chat, 'source', ':done')
    while names:
        for name in list(names):
            done = conn.get(chat + name + ':done')
            if done is not None and int(done) >= count:
                conn.delete(chat + name, chat + name + ':done')
                names.remove(name)
        time.sleep(0.05)


def fetch_pending(conn, recipient, chat):
    seen_id = conn.zscore('seen:' + recipient, chat)
    if seen_id is None:
        return []
    messages = [json.loads(m) for m in conn.zrangebyscore('msgs:' + chat, seen_id + 1, 'inf')]
    if messages:
        last = messages[-1]['id']
        conn.zadd('chat:' + chat, {recipient: last})
        lowest = conn.zrange('chat:' + chat, 0, 0, withscores=True)
        pipe = conn.pipeline(True)
        pipe.zadd('seen:' + recipient, {chat: last})
        if lowest:
            pipe.zremrangebyscore('msgs:' + chat, 0, lowest[0][1])
        pipe.execute()
    return messages


def receive(conn, chat, recipient, out):
    os.makedirs(out, exist_ok=True)
    while True:
        messages = fetch_pending(conn, recipient, chat)
        if not messages:
            time.sleep(0.1)
            continue
        for message in messages:
            name = message['message']
            if name == ':done':
                return
            if not name:
                continue
            data = b''
            while True:
                block = conn.getrange(chat + name, len(data), len(data) + BLOCK - 1)
                data += block
                if len(block) < BLOCK:
                    break
            with open(os.path.join(out, name), 'wb') as f:
                f.write(data)
            if name.endswith('.gz'):
                with open(os.path.join(out, name + '.text'), 'wb') as f:
                    f.write(gzip.decompress(data))
            conn.incr(chat + name + ':done')


def ip_to_score(ip_address):
    score = 0
    for v in ip_address.split('.'):
        score = score * 256 + int(v, 10)
    return score


def import_ips(conn, filename):
    """Section 5.3's import_ips_to_redis."""
    with open(filename, 'rb') as f:
        rows = csv.reader(io.TextIOWrapper(f, encoding='latin-1', newline=''))
        for count, row in enumerate(rows):
            start_ip = row[0] if row else ''
            if 'i' in start_ip.lower():
                continue
            if '.' in start_ip:
                start_ip = ip_to_score(start_ip)
            elif start_ip.isdigit():
                start_ip = int(start_ip, 10)
            else:
                continue
            city_id = row[2] + '_' + str(count)
            conn.zadd('ip2cityid:', {city_id: start_ip})


def import_cities(conn, filename):
    """Section 5.3's import_cities_to_redis."""
    with open(filename, 'rb') as f:
        for row in csv.reader(io.TextIOWrapper(f, encoding='latin-1', newline='')):
            if len(row) < 4 or not row[0].isdigit():
                continue
            city_id, country, region, city = row[0], row[1], row[2], row[3]
            conn.hset('cityid2city:', city_id, json.dumps([city, region, country]))


def main():
    command, url = sys.argv[1:3]
    conn = redis.Redis.from_url(url)
    if command == 'import-geo':
        import_ips(conn, sys.argv[3])
        import_cities(conn, sys.argv[4])
        return
    chat, who, directory = sys.argv[3:6]
    if command == 'send':
        send(conn, chat, int(who), directory)
    elif command == 'receive':
        receive(conn, chat, who, directory)
    else:
        sys.exit('usage: book_peer.py send|receive URL CHANNEL COUNT|ID DIR')


if __name__ == '__main__':
    main()
