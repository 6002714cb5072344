"""Demo data: realistic invented postings and jobping's jobs table to hold them.

Only ``jobping-pipeline demo-data``, the tests and the benchmarks import this package; the
pipeline itself never does.
"""

from jobping_pipeline.demo.postings import DemoJob, generate_jobs
from jobping_pipeline.demo.table import load_demo_jobs

__all__ = ["DemoJob", "generate_jobs", "load_demo_jobs"]
