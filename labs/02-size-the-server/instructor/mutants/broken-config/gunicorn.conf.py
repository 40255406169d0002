# Mutant: a config Gunicorn cannot use; every check must fail, none may crash.
workers = "four"
