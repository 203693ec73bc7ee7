# Each target creates .venv and installs what it needs; run from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOW ?= 2026-03-10T14:30:00Z

.PHONY: demo test lint bench servers clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

# Test servers: Dovecot, Postfix and Cyrus IMAP from Debian's packages (the SMTP sink, aiosmtpd,
# is a Python package). Postfix is installed unconfigured ("No configuration"): no system
# instance is set up or started; tests run private instances (tests/support/postfix.py). It is installed
# before Cyrus, whose packages would otherwise pull in another mail server. Debian's cyrus-imapd
# conflicts with dovecot-imapd (both provide imap-server): cyrus-common (master, tools,
# libraries) and sasl2-bin are installed, and cyrus-imapd's imapd is unpacked into CYRUS_IMAPD
# with dpkg-deb, not installed (tests/support/cyrus.py looks there). Debian's chromium is the
# browser the desk's tests drive headless through Playwright (tests/support/browser.py); no
# browser is downloaded from anywhere else. PostgreSQL's server (the `postgresql` package) is
# started privately by tests/support/postgres.py as the unprivileged `postgres` user; Debian's
# own cluster is not used (its service may be left stopped).
CYRUS_IMAPD := /usr/local/lib/triage-tests/cyrus-imapd
CYRUS_DEBS := cyrus-common sasl2-bin

servers:
	@command -v dovecot >/dev/null 2>&1 || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q dovecot-imapd >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q dovecot-imapd >/dev/null)) || \
	    echo "note: could not install dovecot-imapd; IMAP tests will skip"; \
	  else echo "note: dovecot not installed (apt-get install dovecot-imapd); IMAP tests will skip"; fi)
	@test -x /usr/lib/postfix/sbin/master || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null)) || \
	    echo "note: could not install postfix; relay tests will skip"; \
	  else echo "note: postfix not installed (apt-get install postfix); relay tests will skip"; fi)
	@test -x /usr/lib/cyrus/bin/imapd -o -x $(CYRUS_IMAPD)/usr/lib/cyrus/bin/imapd || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -q --no-install-recommends $(CYRUS_DEBS) >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(CYRUS_DEBS) >/dev/null)) && \
	    debs=$$(mktemp -d) && (cd $$debs && apt-get download -q cyrus-imapd >/dev/null 2>&1) && \
	    mkdir -p $(CYRUS_IMAPD) && dpkg-deb -x $$debs/cyrus-imapd_*.deb $(CYRUS_IMAPD) && rm -rf $$debs || \
	    echo "note: could not set up Cyrus IMAP; its tests will skip"; \
	  else echo "note: Cyrus IMAP not set up (run make servers as root); its tests will skip"; fi)
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -q postgresql >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null)) || \
	    echo "note: could not install postgresql; PostgreSQL tests will skip"; \
	  else echo "note: postgresql not installed (apt-get install postgresql); PostgreSQL tests will skip"; fi)
	@test -x /usr/bin/chromium || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
	    echo "note: could not install chromium; browser tests will skip"; \
	  else echo "note: chromium not installed (apt-get install chromium); browser tests will skip"; fi)

demo: $(VENV)/.installed
	rm -rf triage.db triage.db-wal triage.db-shm triage.db.files demo-acks demo-sinks
	$(BIN)/triage contacts import fixtures/contacts.csv
	$(BIN)/triage --log-level warning replay --config fixtures/demo/triage.toml --db triage.db \
		--now $(NOW) --acks-dir demo-acks --sinks-dir demo-sinks fixtures/emails
	@echo
	@echo "The technicians' page on this database (read-only; Ctrl-C stops it):"
	@echo "  $(BIN)/triage web --db triage.db"
	@echo "  then open http://127.0.0.1:8001/triage/queue"

test: $(VENV)/.installed-test servers
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check triage tests bench
	$(BIN)/ruff format --check triage tests bench

# Every figure in bench/README.md; the long chaos soak (bench/chaos.py) and the
# ten-minute fuzz run (bench/fuzz.py) are run by hand.
bench: $(VENV)/.installed-test servers
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/sla.py
	$(BIN)/python bench/contacts.py
	$(BIN)/python bench/imap.py
	$(BIN)/python bench/mailboxes.py
	$(BIN)/python bench/graph.py
	$(BIN)/python bench/chaos.py --short
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/sinks.py
	$(BIN)/python bench/sinks_daemon.py

clean:
	rm -rf $(VENV) triage.db triage.db-wal triage.db-shm triage.db.files demo-acks demo-sinks build *.egg-info
