"""Lab 04 - state across workers. This is the file you hand in.

A hit counter: POST /hit adds one and answers the new total; GET /count
answers the total. Run THIS copy the way the grader does, from the root of the
Concurrency Lab repository (README.md, step 1):

    make try LAB=04 SUBMISSION=path/to/this/folder
    for i in $(seq 20); do curl -s -X POST http://127.0.0.1:8000/hit & done; wait

Gunicorn's --workers 4 means four *processes*. Each imports this module on
its own, so each has its own copy of every global. Make the count exact across
all of them.
"""

import os
### BEGIN SOLUTION
import sqlite3
from contextlib import closing
### END SOLUTION
### BEGIN STARTER
# import threading
### END STARTER

from flask import Flask, jsonify

app = Flask(__name__)

# A file your app may use for state that all workers share. The grader sets
# COUNTER_PATH to a new path, in an empty folder, for every run.
COUNTER_PATH = os.environ.get("COUNTER_PATH", "hits.sqlite3")

### BEGIN STARTER
# # One counter per worker *process*: four workers, four counters. The lock
# # keeps the threads of one process from losing updates - but a
# # threading.Lock cannot reach into another process.
# hits = 0
# hits_lock = threading.Lock()
### END STARTER
### BEGIN SOLUTION
# The count lives in a SQLite file: one copy on disk that every worker
# process opens. (In production: a database server or Redis - the same idea.)


def connect():
    # timeout: wait up to 10 s for another worker's lock rather than fail.
    # isolation_level=None: we say BEGIN and COMMIT ourselves, below.
    return sqlite3.connect(COUNTER_PATH, timeout=10, isolation_level=None)


# Runs once in each worker as it imports this module; IF NOT EXISTS and
# OR IGNORE make the second, third and fourth time harmless.
with closing(connect()) as db:
    db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for writers
    db.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")


def add_hit():
    # One connection per request: a sqlite3 connection must not be shared
    # between the threads of a gthread worker.
    with closing(connect()) as db:
        # BEGIN IMMEDIATE takes the write lock *before* we read, so no other
        # worker can read the same old value in between: no lost updates.
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE counter SET hits = hits + 1 WHERE id = 1")
        (hits,) = db.execute("SELECT hits FROM counter WHERE id = 1").fetchone()
        db.execute("COMMIT")
        return hits


def read_hits():
    with closing(connect()) as db:
        return db.execute("SELECT hits FROM counter WHERE id = 1").fetchone()[0]


### END SOLUTION


@app.post("/hit")
def hit():
    ### BEGIN SOLUTION
    count = add_hit()
    ### END SOLUTION
    ### BEGIN STARTER
    # global hits
    # with hits_lock:
    #     hits += 1
    #     count = hits
    ### END STARTER
    return jsonify(count=count, pid=os.getpid())


@app.get("/count")
def total():
    ### BEGIN SOLUTION
    count = read_hits()
    ### END SOLUTION
    ### BEGIN STARTER
    # count = hits
    ### END STARTER
    return jsonify(count=count, pid=os.getpid())
