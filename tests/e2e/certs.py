"""Test certificates made at test time with the openssl command line.

    ca = TestCA(tmp_path / "pki")
    leaf = ca.issue("a", ["a.test"], key="ec")          # ECDSA P-256
    leaf = ca.issue("b", ["b.test"], key="rsa")         # RSA 2048
    leaf = ca.issue("old", ["a.test"], expired=True)    # valid in the past only

Every leaf gets a fresh random serial; `leaf.der` is the DER encoding, so a
served certificate can be compared byte for byte. Leaves are valid for 90 days
(testssl flags shorter lifetimes) and carry serverAuth, SAN DNS names and the
usual key usages.
"""

import datetime
import os
import secrets
import subprocess

OPENSSL = "openssl"


def _run(args, **kw):
    p = subprocess.run([OPENSSL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60, **kw)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                          p.stderr.decode(errors="replace")))
    return p.stdout


def pem_to_der(pem):
    if isinstance(pem, str):
        pem = pem.encode()
    return _run(["x509", "-outform", "DER"], input=pem)


def der_to_pem(der):
    return _run(["x509", "-inform", "DER", "-outform", "PEM"], input=der).decode()


def cert_info(der):
    """{'serial': 'HEX' (upper case, no leading zeros), 'subject': ..., 'not_after': epoch}"""
    out = _run(["x509", "-inform", "DER", "-noout", "-serial", "-subject", "-enddate",
                "-nameopt", "RFC2253"], input=der).decode()
    info = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        if k == "serial":
            info["serial"] = v.strip().upper().lstrip("0") or "0"
        elif k == "subject":
            info["subject"] = v.strip()
        elif k == "notAfter":
            t = datetime.datetime.strptime(v.strip(), "%b %d %H:%M:%S %Y GMT")
            info["not_after"] = int(t.replace(tzinfo=datetime.timezone.utc).timestamp())
    return info


class Leaf:
    def __init__(self, cert, key, der, names, key_type):
        self.cert = cert          # path: leaf (then chain) PEM
        self.key = key            # path: private key PEM
        self.der = der
        self.names = names
        self.key_type = key_type  # "ec" or "rsa"
        info = cert_info(der)
        self.serial = info["serial"]
        self.not_after = info["not_after"]
        self.subject = info["subject"]

    def __repr__(self):
        return "<Leaf %s %s serial=%s>" % (self.key_type, self.names, self.serial)


def new_key(path, key_type="ec"):
    if key_type == "ec":
        _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", path])
    elif key_type == "rsa":
        _run(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path])
    else:
        raise ValueError(key_type)
    os.chmod(path, 0o600)
    return path


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory, name="Switchyard Test CA"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.key = new_key(os.path.join(self.dir, "ca.key"), "ec")
        self.cert = os.path.join(self.dir, "ca.crt")
        _run(["req", "-new", "-x509", "-key", self.key, "-out", self.cert, "-days", "365",
              "-subj", "/O=Switchyard tests/CN=%s" % name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-set_serial", "0x%s" % secrets.token_hex(8)])
        # for `openssl ca` (certificates with chosen dates)
        self._db = os.path.join(self.dir, "index.txt")
        open(self._db, "w").close()
        with open(os.path.join(self.dir, "index.txt.attr"), "w") as f:
            f.write("unique_subject = no\n")
        self._n = 0

    def issue(self, name, names, key="ec", days=90, expired=False, out_dir=None, key_path=None):
        """Writes <out_dir>/<name>.crt and .key (a new key unless key_path is given)."""
        out_dir = str(out_dir or self.dir)
        os.makedirs(out_dir, exist_ok=True)
        self._n += 1
        tag = "%s-%d" % (name, self._n)
        work = os.path.join(self.dir, tag)
        crt = os.path.join(out_dir, "%s.crt" % name)
        kpath = key_path or os.path.join(out_dir, "%s.key" % name)
        if not key_path:
            new_key(kpath, key)   # else: `key` must name the type of key_path
        ext = work + ".ext"
        with open(ext, "w") as f:
            f.write("[v3]\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature%s\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                    "subjectAltName=%s\n" % (
                        ",keyEncipherment" if key == "rsa" else "",
                        ",".join("DNS:%s" % n for n in names)))
        _run(["req", "-new", "-key", kpath, "-out", work + ".csr", "-subj", "/CN=%s" % names[0]])
        serial = secrets.token_hex(8)
        serial = ("1" + serial[1:]) if serial[0] == "0" else serial  # keep 16 hex digits
        if not expired:
            _run(["x509", "-req", "-in", work + ".csr", "-CA", self.cert, "-CAkey", self.key,
                  "-set_serial", "0x" + serial, "-days", str(days), "-sha256",
                  "-extfile", ext, "-extensions", "v3", "-out", work + ".pem"])
        else:
            cnf = work + ".cnf"
            with open(cnf, "w") as f:
                f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=%s\nnew_certs_dir=%s\n"
                        "serial=%s\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
                        "[p]\ncommonName=supplied\n" % (self._db, self.dir, work + ".serial"))
            with open(work + ".serial", "w") as f:
                f.write(serial.upper() + "\n")
            _run(["ca", "-batch", "-config", cnf, "-cert", self.cert, "-keyfile", self.key,
                  "-in", work + ".csr", "-out", work + ".pem", "-notext",
                  "-startdate", "20200101000000Z", "-enddate", "20200401000000Z",
                  "-extfile", ext, "-extensions", "v3"])
        der = pem_to_der(open(work + ".pem", "rb").read())
        with open(crt + ".tmp", "w") as f:
            f.write(der_to_pem(der))
        os.replace(crt + ".tmp", crt)
        return Leaf(crt, kpath, der, list(names), key)
