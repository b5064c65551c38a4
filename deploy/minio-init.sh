#!/bin/sh
# Buckets and one least-privilege user per client (ctloop's tasks; the MLflow server), each allowed
# into its own bucket only. Idempotent: it runs on every `docker compose up`, and a user's secret
# is set again from .env. mc takes the root credentials from MC_HOST_minio rather than `mc alias
# set`, so they are written to no config file and show in no command line.
set -eu

mc mb --ignore-existing minio/ctloop minio/mlflow

add_user() {  # bucket access_key secret_key
  policy="/tmp/$1-readwrite.json"
  # printf, a shell builtin: the mc image has little besides the shell.
  printf '%s\n' \
    '{"Version": "2012-10-17", "Statement": [' \
    "  {\"Effect\": \"Allow\", \"Resource\": [\"arn:aws:s3:::$1\"]," \
    '   "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]},' \
    "  {\"Effect\": \"Allow\", \"Resource\": [\"arn:aws:s3:::$1/*\"]," \
    '   "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",' \
    '              "s3:ListMultipartUploadParts"]}]}' >"$policy"
  mc admin policy create minio "$1-readwrite" "$policy"
  mc admin user add minio "$2" "$3"
  # A second attach fails with "already in effect" (minio/mc#4863); that is success here.
  if ! out=$(mc admin policy attach minio "$1-readwrite" --user "$2" 2>&1); then
    case "$out" in
      *"already in effect"* | *"no net effect"*) ;;
      *) echo "$out" >&2; exit 1 ;;
    esac
  fi
}

add_user ctloop "$CTLOOP_S3_ACCESS_KEY_ID" "$CTLOOP_S3_SECRET_ACCESS_KEY"
add_user mlflow "$MLFLOW_S3_ACCESS_KEY_ID" "$MLFLOW_S3_SECRET_ACCESS_KEY"
