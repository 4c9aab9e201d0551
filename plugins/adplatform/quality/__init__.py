"""Quality gates (Great Expectations 1.x) that stand between a layer's writer and its readers."""
