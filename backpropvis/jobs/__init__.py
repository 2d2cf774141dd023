"""Jobs (layer 8): what a command runs, each one function of the Python API.

- :mod:`.suite`: the paper's figures and the theory studies as one run with a report
  (``backpropvis reproduce`` and ``backpropvis theory``).
- :mod:`.visualize`: the maps of some images, a grid and ``summary.json``.
- :mod:`.units_view`: the units inside a network, Zeiler & Fergus style.

The audit (:mod:`backpropvis.audit`) and the sanity protocols (:mod:`backpropvis.sanity`)
are jobs too, in their own packages beside this one. Nothing is imported here: a job is
imported by name (``from backpropvis.jobs.visualize import visualize``).
"""
