"""Bronze → Silver → Gold: the Spark transforms, their run plan and the publication of results.

The Spark logic (``silver``, ``gold``) is plain functions over a SparkSession, called by the
``spark_jobs/`` entry points and by the tests; ``plan`` and ``pipeline`` are the Airflow glue
(which hours to rebuild, gates, publication) and never import pyspark.
"""
