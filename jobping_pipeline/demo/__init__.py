"""Demo data: realistic invented postings and jobping's jobs table to hold them.

Only ``jobping-pipeline demo-data``, the tests, the benchmarks and the backend measurement (its
fixed sample of texts of real length, ``models/loading.py``) import this package; the pipeline's
runs never read it.
"""

from jobping_pipeline.demo.postings import DemoJob, generate_jobs
from jobping_pipeline.demo.table import load_demo_jobs

__all__ = ["DemoJob", "generate_jobs", "load_demo_jobs"]
