#!/usr/bin/env bash
# certs.sh DIR: a throwaway CA, a server certificate for 127.0.0.1/localhost, a client
# certificate, and a second CA that signed nothing we trust (for negative tests). Idempotent.
set -euo pipefail
D=${1:?usage: certs.sh DIR}
[ -f "$D/client.crt" ] && exit 0
mkdir -p "$D"; cd "$D"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 30 -subj /CN=fleet-test-ca 2>/dev/null
openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.crt -days 30 -subj /CN=other-ca 2>/dev/null
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
	-extfile server.ext -out server.crt 2>/dev/null
openssl req "${ec[@]}" -keyout client.key -out client.csr -subj /CN=fleet-client 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
	-extfile client.ext -out client.crt 2>/dev/null
rm -f ./*.csr ./*.ext
echo "$D"
