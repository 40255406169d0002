"""Homework labs: markers, the student handout, grading, and the graders' own tools.

    conclab handout --out dist/handout
    conclab grade 01                                  # labs/01-*/ as it stands
    conclab grade 01 --submission path/to/01-folder   # a student's copy

    markers    solution/starter blocks and the student version of a file
    handout    find the labs, write dist/handout/
    grading    run a lab's grader against a submission
    plugin     the pytest plugin graders run under: PASS/FAIL lines and a score
    helpers    what grader tests import: the student's files, start failures

Instructor sources in ``labs/NN-topic/`` keep the solution between markers
(labs/README.md describes them).
"""
