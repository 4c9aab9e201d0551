"""spark-submit target. Silver → Gold: hourly performance rollups.

Usage: spark-submit spark_jobs/silver_to_gold.py --hours HOURS --run-dir DIR (see --help).
"""

import sys

from adplatform.transform.jobs import silver_to_gold

if __name__ == "__main__":
    sys.exit(silver_to_gold())
