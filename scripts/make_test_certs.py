#!/usr/bin/env python3
"""Writes the certificates the TLS tests need into DIR, with the `cryptography` package.

  ca.pem                            a local certificate authority (the tests trust only this one)
  server.pem / server.key           issued by the CA for 127.0.0.1 and localhost: the one that passes
  other-host.pem / other-host.key   issued by the CA for other.example.test only: wrong host name
  self-signed.pem / self-signed.key for 127.0.0.1 and localhost, but signed by itself
  expired.pem / expired.key         issued by the CA for 127.0.0.1 and localhost, valid only in 2020
  client.pem / client.key           a client certificate issued by the CA, for stores that ask for one

Usage: scripts/make_test_certs.py DIR
"""
import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hall gateway tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write(folder, stem, certificate, private_key=None):
    (folder / f"{stem}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if private_key is not None:
        (folder / f"{stem}.key").write_bytes(private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def certificate(subject, subject_key, issuer, issuer_key, names, not_before, not_after, usage, ca=False):
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer)
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    server_usage = ExtendedKeyUsageOID.SERVER_AUTH

    ca_key = key()
    ca_name = name("Hall gateway test CA")
    ca = certificate(ca_name, ca_key, ca_name, ca_key, None, start, end + datetime.timedelta(days=1), None, ca=True)
    write(folder, "ca", ca)

    server_key = key()
    write(folder, "server", certificate(name("127.0.0.1"), server_key, ca_name, ca_key, LOCAL_NAMES, start, end,
                                        server_usage), server_key)

    other_key = key()
    write(folder, "other-host", certificate(name("other.example.test"), other_key, ca_name, ca_key,
                                            [x509.DNSName("other.example.test")], start, end, server_usage), other_key)

    self_key = key()
    self_name = name("localhost")
    write(folder, "self-signed", certificate(self_name, self_key, self_name, self_key, LOCAL_NAMES, start, end,
                                             server_usage), self_key)

    expired_key = key()
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    write(folder, "expired", certificate(name("127.0.0.1"), expired_key, ca_name, ca_key, LOCAL_NAMES, past,
                                         past + datetime.timedelta(days=365), server_usage), expired_key)

    client_key = key()
    write(folder, "client", certificate(name("hall gateway test-hall"), client_key, ca_name, ca_key, None, start, end,
                                        ExtendedKeyUsageOID.CLIENT_AUTH), client_key)
    print(f"test certificates written to {folder}")


if __name__ == "__main__":
    main()
