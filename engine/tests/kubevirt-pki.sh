#!/usr/bin/env bash
# Makes the TLS material of the kubevirt tests in DIR with the openssl
# command: a CA, the API server's certificate for 127.0.0.1 signed by it, a
# client certificate signed by it, and a second CA nobody trusts (for the
# "wrong CA" cases). Keys are EC P-256: quick to make, fine for TLS 1.3.
# Usage: kubevirt-pki.sh DIR
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
for ca in ca rogue; do
  key $ca.key
  openssl req -x509 -new -key $ca.key -days 2 -subj "/CN=orrery-test-$ca" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -out $ca.pem 2>/dev/null
done
key server.key
openssl req -new -key server.key -subj /CN=kube-apiserver -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile server.ext -out server.pem 2>/dev/null
key client.key
openssl req -new -key client.key -subj "/CN=orrery/O=system:masters" -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile client.ext -out client.pem 2>/dev/null
# A client certificate from the rogue CA: the server must refuse it.
openssl req -new -key client.key -subj "/CN=intruder" -out rogue-client.csr 2>/dev/null
openssl x509 -req -in rogue-client.csr -CA rogue.pem -CAkey rogue.key -CAcreateserial \
  -days 2 -extfile client.ext -out rogue-client.pem 2>/dev/null
rm -f ./*.csr ./*.ext ./*.srl
