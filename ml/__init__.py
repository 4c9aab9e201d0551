"""The CTR model: features, training, evaluation, MLflow registration and promotion, export to
the serving tier and the reference scorer the ad server embeds.

``ml.scorer``, ``ml.compiled``, ``ml.spec``, ``ml.store`` and ``ml.errors`` need only numpy,
pyarrow, LightGBM, lleaves (llvmlite) and the adplatform package (its atomic writer), so the
serving tier can embed them without the training stack (scikit-learn, MLflow); lleaves imports
pandas when it is installed.
"""
