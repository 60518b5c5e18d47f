"""What a run leaves, read without training code: the checkpoint record and files, the metrics
log, provenance. Training writes them (lsvr.train); eval, predict, export, info and convert
read them from here."""
