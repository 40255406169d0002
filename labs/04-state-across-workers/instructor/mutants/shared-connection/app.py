"""Mutant: the count in SQLite, but one connection opened at import and shared.

Right across sync workers (each serves requests on the thread that imported
this module); wrong in a gthread worker, whose request threads may not use a
connection made by another thread.
"""

import os
import sqlite3

from flask import Flask, jsonify

app = Flask(__name__)
COUNTER_PATH = os.environ.get("COUNTER_PATH", "hits.sqlite3")

db = sqlite3.connect(COUNTER_PATH, timeout=10, isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)")
db.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")


@app.post("/hit")
def hit():
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE counter SET hits = hits + 1 WHERE id = 1")
    (count,) = db.execute("SELECT hits FROM counter WHERE id = 1").fetchone()
    db.execute("COMMIT")
    return jsonify(count=count, pid=os.getpid())


@app.get("/count")
def total():
    (count,) = db.execute("SELECT hits FROM counter WHERE id = 1").fetchone()
    return jsonify(count=count, pid=os.getpid())
