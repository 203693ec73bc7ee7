"""Real servers and harnesses for tests and bench scripts, with public names.

    dovecot      a private Dovecot (dovecot_conf: its files)      cyrus     a private Cyrus IMAP
    postfix      a private Postfix relay                            smtp_sink aiosmtpd, saving mail
    imap         stdlib IMAP helpers for any of those servers       oauth     token introspection
    daemon       `triage run` as a subprocess: config, log, database, processes
    certs        self-signed certificates                           net       free ports, waits
    procs        processes seen through /proc, stopped by pid       scratch   private folders
    tickets      ticket rows made by hand, for outbox rows that name them

Plain modules (no pytest import), so bench scripts use them too.
"""
