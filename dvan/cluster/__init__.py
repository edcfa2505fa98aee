"""Beyond one machine: import on Ray workers, sharded libraries mounted together and searched in parallel.

* :mod:`dvan.cluster.runtime` finds Ray (an optional extra: ``pip install ".[cluster]"``) and
  connects to a cluster; nothing else in dvan imports Ray, and this package imports it only
  when a cluster is asked for.
* :mod:`dvan.cluster.ray_import` runs the image backbone on Ray workers for
  :func:`dvan.library.import_paths`; reading, tiling and the atomic commit stay in the driver.
* :mod:`dvan.cluster.mount` lists shard libraries (each a normal library) in one mount file.
* :mod:`dvan.cluster.sharded_search` scores the shards in parallel (Ray tasks, or local
  processes) and merges their top-K exactly.
"""
