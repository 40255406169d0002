# gunicorn.conf.py - how Gunicorn runs app.py. This is a file you hand in.
#
# Gunicorn reads it as Python: `gunicorn -c gunicorn.conf.py app:app`.
# Every setting: https://docs.gunicorn.org/en/stable/settings.html
# The grader starts `gunicorn -c gunicorn.conf.py --bind 127.0.0.1:<port>
# --chdir <lab> app:app` on every usable core, so `bind` and `chdir` here are ignored,
# and it turns keep-alive off (README, "How it is graded").
### BEGIN SOLUTION
#
# Little's law: to serve X = 30 requests/s when each takes S = 0.305 s, about
# X x S = 30 x 0.305 = 9.2 requests must be in progress at once: at least 10
# slots. With 16 users, 16 slots means nobody ever queues for one.
#
# A waiting thread is a cheap slot: it sleeps and releases the GIL. Two
# processes rather than one, so the CPU part of requests is not queued behind
# one GIL (the threads of one process share it) and can use two cores where
# the machine has them.
workers = 2
threads = 8
### END SOLUTION
### BEGIN STARTER
# workers = 1
### END STARTER
