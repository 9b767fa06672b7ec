"""dul: reproducible, distributed pipelines for deep unsupervised learning.

The library behind the DVC stages in ``pipelines/``. It knows nothing about
DVC: every stage's work is a plain function here that tests can call.
"""
