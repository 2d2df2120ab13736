"""Test certificates for STARTTLS, made by the openssl command line in a scratch directory.

make_certs(directory, names) writes:
  ca.pem, ca.key              a test CA (self-signed, CA:TRUE)
  server.pem, server.key      a server certificate signed by the test CA, for `names`
                              (DNS names, or IP addresses given as "IP:127.0.0.1")
  selfsigned.pem, selfsigned.key
                              a self-signed server certificate for the same names
and returns their paths in a dict keyed by those file names without extension
("ca", "ca_key", "server", "server_key", "selfsigned", "selfsigned_key").
Keys are P-256 (fast to make); certificates are valid for two days.
"""

import os
import subprocess


def _openssl(args, cwd):
    result = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], result.stderr.decode(errors="replace")))


def _san(names):
    return ",".join(n if n.startswith("IP:") else "DNS:" + n for n in names)


def make_certs(directory, names=("localhost", "IP:127.0.0.1")):
    os.makedirs(directory, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    common_name = next((n for n in names if not n.startswith("IP:")), "localhost")
    _openssl(["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=libsmtp test CA", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], directory)
    _openssl(["req", "-new"] + key + ["-keyout", "server.key", "-out", "server.csr",
              "-subj", "/CN=" + common_name], directory)
    with open(os.path.join(directory, "server.ext"), "w") as ext:
        ext.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                  "extendedKeyUsage=serverAuth\n" % _san(names))
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "server.ext"], directory)
    _openssl(["req", "-x509"] + key + ["-keyout", "selfsigned.key", "-out", "selfsigned.pem",
              "-days", "2", "-subj", "/CN=" + common_name,
              "-addext", "subjectAltName=" + _san(names)], directory)
    paths = {}
    for base in ("ca", "server", "selfsigned"):
        paths[base] = os.path.join(directory, base + ".pem")
        paths[base + "_key"] = os.path.join(directory, base + ".key")
    return paths
