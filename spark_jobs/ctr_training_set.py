"""spark-submit target. Silver → Gold: the CTR training set (one row per impression).

Usage: spark-submit spark_jobs/ctr_training_set.py --hours HOURS --run-dir DIR (see --help).
"""

import sys

from adplatform.transform.jobs import ctr_training_set

if __name__ == "__main__":
    sys.exit(ctr_training_set())
