"""Transcription on a Ray cluster: a pool of workers, each with the model loaded once, that the
files of a corpus are handed to (the optional `ray` extra).

- `session.connect` starts a Ray instance on this machine that talks over loopback only, joins
  a running cluster, or reaches a remote one through Ray Client.
- `worker.Transcriber` is what each Ray actor runs: it loads the model with the caller's
  settings and transcribes the files it is handed, one after another or with the many-files
  engine (`whisper.engine`) when `batch_size` > 1, writing each file's outputs atomically or
  sending the transcript back.
- `pool.Cluster` keeps the workers in a `ray.util.ActorPool`, hands them groups of files as
  they come free, and yields each file's outcome as it arrives. A worker that dies has its
  unfinished files handed to another (and Ray restarts it); a file that fails on its own
  merits is an outcome like any other, not retried.

Ray is imported only when a cluster is used; nothing here prints.
"""
