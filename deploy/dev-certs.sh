#!/usr/bin/env bash
# Makes a development CA and a certificate for each learnhub service, in the layout the
# services and cert-manager use (per service: tls.crt, tls.key, ca.crt):
#
#   deploy/dev-certs.sh [DIR]        # default: deploy/overlays/dev/tls
#
# The dev overlay turns DIR/<service>.{crt,key} and DIR/ca.crt into the Secrets <service>-tls.
# Each certificate names its service (DNS SAN `catalog-svc`, plus the in-cluster names), which
# is what the services check: the callee against the name it calls, the caller against the
# per-RPC allow-list. DEV ONLY: the CA key is written next to the certificates. Production
# issues the same Secrets with cert-manager (deploy/overlays/prod/certificates.example.yaml).
#
# Run it again to rotate: the services read the new files within TLS_RELOAD_SECS (10 s) of
# kubelet updating the Secret volume, without a restart.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/overlays/dev/tls}
namespace=${NAMESPACE:-learnhub}
days=${DAYS:-825}
mkdir -p "$dir"
cd "$dir"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=learnhub dev CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

for service in gateway catalog-svc enrollment-svc cache-svc; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$service" \
    -keyout "$service.key" -out "$service.csr" 2>/dev/null
  openssl x509 -req -in "$service.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -out "$service.crt" -extfile <(printf '%s\n' \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectAltName=DNS:$service,DNS:$service.$namespace,DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.cluster.local") \
    2>/dev/null
  rm -f "$service.csr"
done
rm -f ca.srl
echo "wrote $dir: ca.crt (and ca.key), <service>.crt and <service>.key for gateway, catalog-svc, enrollment-svc, cache-svc"
