"""Bronze → Silver → Gold: the Spark transforms, their run plan and the publication of results.

The Spark logic (``silver``, ``gold``) is plain functions over a SparkSession, called by the
``spark_jobs/`` entry points and by the tests; ``pipeline`` is what the DAGs' tasks call (plan,
gate, publish, commit, on the run-staging model of ``adplatform.lakehouse.runs``) and never
imports pyspark.
"""
