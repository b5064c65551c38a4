"""What a model trains and is judged on: content-addressed snapshots, the frozen holdout and the
training window.
"""
