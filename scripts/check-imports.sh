#!/usr/bin/env bash
# Enforces the package layout's import rules (README, "Layout"): events and
# the encoding side (encoding, store, worker) never import each other, the
# pure domain (encoding) imports no NATS package, domain packages never
# import config, admin or cmd, and natstest stays out of production code.
set -euo pipefail
mod=github.com/cardwire/cardwire
fail=0
while read -r pkg imports; do
  for imp in $imports; do
    # The pure domain does no I/O: no NATS.
    if [ "$pkg" = "$mod/internal/encoding" ]; then
      case "$imp" in github.com/nats-io/*) echo "import rule: internal/encoding must not import $imp"; fail=1 ;; esac
    fi
    case "$imp" in $mod/*) ;; *) continue ;; esac
    short=${imp#"$mod/"}
    case "$pkg" in
      $mod/internal/events|$mod/internal/encoding|$mod/internal/store|$mod/internal/worker|$mod/internal/seam|$mod/internal/seamsim|$mod/internal/streams|$mod/internal/broker|$mod/internal/admin|$mod/internal/config|$mod/internal/httpapi|$mod/internal/lifecycle|$mod/internal/workspaces|$mod/internal/catchup|$mod/internal/parking)
        case "$pkg" in
          */events) allowed="internal/streams internal/httpapi" ;;
          */encoding) allowed="internal/streams internal/seam" ;;
          */store) allowed="internal/encoding internal/streams" ;;
          */worker) allowed="internal/encoding internal/store internal/streams internal/seam internal/httpapi internal/workspaces internal/parking" ;;
          */workspaces) allowed="internal/config internal/seam internal/streams" ;;
          */catchup) allowed="internal/seam internal/streams" ;;
          */seamsim) allowed="internal/seam" ;;
          */admin) allowed="internal/httpapi" ;;
          *) allowed="" ;;
        esac
        ok=0
        for a in $allowed; do [ "$short" = "$a" ] && ok=1; done
        if [ $ok = 0 ]; then echo "import rule: ${pkg#"$mod/"} must not import $short"; fail=1; fi
        ;;
    esac
    case "$short" in internal/natstest|internal/promtest|internal/logtest|internal/clitest|internal/eventstest)
      echo "import rule: ${pkg#"$mod/"} must not import $short outside tests"; fail=1 ;;
    esac
    case "$short" in cmd/*) echo "import rule: ${pkg#"$mod/"} must not import $short"; fail=1 ;; esac
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
exit $fail
