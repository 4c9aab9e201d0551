"""The lakehouse: table contracts, partitions, atomic file IO under the data root, and the
run-staging model every layer's writers and gates share (``runs``: which hours a run rebuilds,
its Bronze snapshot and staging area; ``windows``: how far late events and attribution reach).
"""
