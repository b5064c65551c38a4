"""Where bytes live and how they are read: storage (local or S3), reading data files into frames,
ctloop's database and its locks.
"""
