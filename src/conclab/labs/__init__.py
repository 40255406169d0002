"""Homework labs: markers, the student handout, grading, and the graders' own tools.

    conclab handout --out dist/handout
    conclab grade 01                                  # labs/01-*/ as it stands
    conclab grade 01 --submission path/to/01-folder   # a student's copy
    conclab grade 01 --batch submissions/ --jobs 2    # a whole class
    conclab autograder 01 --gradescope lab01.zip      # what a teacher uploads

    markers    solution/starter blocks and the student version of a file
    handout    find the labs, write dist/handout/
    grading    run a lab's grader against a submission
    plugin     the pytest plugin graders run under: PASS/FAIL lines and a score
    helpers    what grader tests import: the student's files, start failures
    harness    what graders' shims and helper services share
    results    points per check, the grade, and its text/JSON/Gradescope formats
    batch      a whole class at once (grades.csv, feedback per student)
    sandbox    a grader's bounds (Linux calls; imported by batch and autograder only)
    autograder Gradescope's zip and a GitHub Classroom template (docs/grading.md)

Instructor sources in ``labs/NN-topic/`` keep the solution between markers
(labs/README.md describes them).
"""
