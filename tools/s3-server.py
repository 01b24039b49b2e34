"""A local S3 server (moto) on the loopback interface, for tensorseal's tests and demos.

    python tools/s3-server.py [BUCKET ...]

Starts moto's threaded server on 127.0.0.1 on a free port, creates each BUCKET (with versioning
enabled when its name ends in "-versioned"), prints the
environment a client needs, one `export NAME=value` line each, then a line `ready`, and serves
until its standard input closes (so a test that spawns it stops it by dropping the pipe) or it
is interrupted.
"""

import logging
import sys

import boto3
from moto.server import ThreadedMotoServer

# moto accepts any credentials; these only have to be present and the same on both sides.
ENV = {
    "AWS_ACCESS_KEY_ID": "tensorseal-test",
    "AWS_SECRET_ACCESS_KEY": "tensorseal-test-secret",
    "AWS_REGION": "us-east-1",
}


def main() -> int:
    # One log line per request would drown a test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=ENV["AWS_REGION"],
    )
    for bucket in sys.argv[1:]:
        s3.create_bucket(Bucket=bucket)
        if bucket.endswith("-versioned"):
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
    for name, value in {**ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        print(f"export {name}={value}")
    print("ready", flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
