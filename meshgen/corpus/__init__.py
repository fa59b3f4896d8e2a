"""The real-world corpus: Istio's own samples, read at test time, each run through both local meshes with sandboxes
and requests generated from it, and judged with no hand-written expectation.

- :mod:`meshgen.corpus.samples` says which sample files make one baseline (a small table, plus discovery of the
  rest) and which files are skipped, and why;
- :mod:`meshgen.corpus.probes` generates, for one baseline, the sandboxes (each HTTP workload forked in turn, a
  virtual workload, a route group over two forks), the routing-key variants and the requests (one per route);
- :mod:`meshgen.corpus.answers` turns a response into a comparable answer and states what a key must change in it;
- :mod:`meshgen.corpus.checking` applies baselines to meshes it is handed, samples answers until the two sides of
  every comparison agree or provably differ, and prints the table.

Nothing here starts a process: the meshes are passed in, as in :mod:`meshgen.golden`.
"""
