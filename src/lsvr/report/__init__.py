"""`lsvr eval CHECKPOINT SET --report DIR`: a static page to look at where a model fails.

collect.py keeps a few numbers of each image as evaluate scores it; numbers.py turns them into the
confusion matrix, per-class precision and recall, the most confused pairs, the top losses and the
reliability bins with the expected calibration error; pictures.py draws; page.py writes the HTML;
build.py puts the three files together; folder.py refuses a folder holding a user's files and
writes the page last. Imports nothing from lsvr.train (tests/test_import_floors.py)."""
