"""Test helper: talk to the S3 test endpoint with boto3 (Debian's python3-boto3 on a Molecule host).

  s3_tool.py --endpoint URL bucket-create NAME
  s3_tool.py --endpoint URL objects NAME PREFIX         -> JSON {key: {size, sha256, metadata}}
  s3_tool.py --endpoint URL put-dir NAME PREFIX DIR     every file of DIR under PREFIX/
"""
import argparse
import hashlib
import json
import os

import boto3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("command", choices=["bucket-create", "objects", "put-dir"])
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    if args.command == "bucket-create":
        s3.create_bucket(Bucket=args.args[0])
        print(json.dumps({"created": args.args[0]}))
    elif args.command == "put-dir":
        bucket, prefix, directory = args.args
        names = sorted(os.listdir(directory))
        for name in names:
            s3.upload_file(os.path.join(directory, name), bucket, f"{prefix}/{name}")
        print(json.dumps({"put": len(names)}))
    else:
        bucket, prefix = args.args
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])
                out[obj["Key"]] = {"size": obj["Size"], "sha256": hashlib.sha256(body["Body"].read()).hexdigest(),
                                   "metadata": body.get("Metadata", {})}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
