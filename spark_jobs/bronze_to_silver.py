"""spark-submit target. Bronze → Silver: deduplicate, drop too-late events, attribute, normalise money.

Usage: spark-submit spark_jobs/bronze_to_silver.py --hours HOURS --run-dir DIR (see --help).
"""

import sys

from adplatform.transform.jobs import bronze_to_silver

if __name__ == "__main__":
    sys.exit(bronze_to_silver())
