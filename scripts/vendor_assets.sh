#!/usr/bin/env bash
# Refresh the vendored front-end packages in botrequests/static/vendor from the npm registry
# (versions below; bump them here and in botrequests/static/vendor/README.md together).
set -euo pipefail
SWAGGER_UI=5.35.0
CHARTJS=4.6.1
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/botrequests/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "chart.js@$CHARTJS" >/dev/null
mkdir swagger chartjs
tar xzf "swagger-ui-dist-$SWAGGER_UI.tgz" -C swagger --strip-components 1
tar xzf "chart.js-$CHARTJS.tgz" -C chartjs --strip-components 1
mkdir -p "$vendor/swagger-ui" "$vendor/chartjs"
cp swagger/{swagger-ui-bundle.js,swagger-ui.css,LICENSE,NOTICE,favicon-32x32.png} "$vendor/swagger-ui/"
cp chartjs/dist/chart.umd.min.js chartjs/LICENSE.md "$vendor/chartjs/"
echo "vendored swagger-ui-dist $SWAGGER_UI and chart.js $CHARTJS into $vendor"
