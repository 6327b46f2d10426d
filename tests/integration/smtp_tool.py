#!/usr/bin/python3
"""The SMTP server and the MIME checker of test_mail.c (Debian's python3-aiosmtpd;
run with /usr/bin/python3).

serve: an aiosmtpd server on 127.0.0.1, on a port the kernel picks, printed as
the first line of stdout. Each message accepted is saved as DIR/msg-N.eml (the
bytes received, CRLF and all) with DIR/msg-N.json (envelope sender and
recipients, the login, whether TLS was on, how many DATA it took). Options:
refuse recipients (550), refuse them for now once (450), answer the first N
DATA with 451, require AUTH (a user and password), offer STARTTLS (and require
it) or speak TLS from the first byte; --silent accepts connections and never
answers.

inspect FILE: parses a saved message with the standard library's email
package (a parser independent of GMime) and prints what the test checks as
JSON: headers, structure, both bodies (line ends as LF), each attachment's name, type, encoding,
SHA-256 and size of its decoded bytes, defects, bare LFs, the longest line.
"""
import argparse
import asyncio
import email
import email.policy
import email.utils
import hashlib
import json
import os
import ssl
import sys


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.refuse = set(args.refuse or [])
        self.defer = set(args.defer_once or [])
        self.fail_data = args.fail_data
        self.data_attempts = 0
        self.n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 <%s>: no such user" % address
        if address in self.defer:
            self.defer.discard(address)
            return "450 4.2.1 <%s>: mailbox busy, try later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_attempts += 1
        if self.fail_data > 0:
            self.fail_data -= 1
            return "451 4.3.0 try again later"
        self.n += 1
        base = os.path.join(self.dir, "msg-%d" % self.n)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        login = session.auth_data.login.decode() if session.authenticated else None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth": login,
            "tls": session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
            "data_attempts": self.data_attempts,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK queued as %d" % self.n


def serve(args):
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    os.makedirs(args.dir, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.silent:
        async def never(reader, writer):
            await asyncio.sleep(3600)
        server = loop.run_until_complete(asyncio.start_server(never, "127.0.0.1", 0))
    else:
        handler = Handler(args)
        ctx = None
        if args.starttls or args.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*(args.starttls or args.tls))

        def authenticator(server, session, envelope, mechanism, auth_data):
            user, password = args.auth.split(":", 1)
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
                  and auth_data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        def factory():
            return SMTP(handler, hostname="mail.test", loop=loop, data_size_limit=64 << 20,
                        tls_context=ctx if args.starttls else None,
                        require_starttls=bool(args.starttls and args.require_starttls),
                        authenticator=authenticator if args.auth else None,
                        auth_required=bool(args.auth),
                        # implicit TLS: aiosmtpd only knows of STARTTLS
                        auth_require_tls=not args.tls)

        server = loop.run_until_complete(
            loop.create_server(factory, "127.0.0.1", 0, ssl=ctx if args.tls else None))
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


def inspect(path):
    with open(path, "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = {
        "header_names": list(msg.keys()),
        "from_name": msg["From"].addresses[0].display_name,
        "from": msg["From"].addresses[0].addr_spec,
        "to": [a.addr_spec for a in msg["To"].addresses],
        "to_names": [a.display_name for a in msg["To"].addresses],
        "subject": str(msg["Subject"]),
        "date": email.utils.parsedate_to_datetime(str(msg["Date"])).isoformat(),
        "message_id": str(msg["Message-ID"]),
        "auto_submitted": str(msg["Auto-Submitted"]),
        "mime_version": str(msg["MIME-Version"]),
        "structure": [p.get_content_type() for p in msg.walk()],
        "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
        "bare_lf": raw.replace(b"\r\n", b"").find(b"\n") >= 0,
        "max_line": max(len(line) for line in raw.split(b"\r\n")),
        "attachments": [],
    }
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        if part is not None and part.get_content_type() == "text/" + kind:
            out[kind] = part.get_content().replace("\r\n", "\n")  # CRLF on the wire
            out[kind + "_charset"] = part.get_content_charset()
            out[kind + "_cte"] = part["Content-Transfer-Encoding"]
    for part in msg.iter_attachments():
        data = part.get_payload(decode=True)
        out["attachments"].append({
            "filename": part.get_filename(),
            "type": part.get_content_type(),
            "disposition": part.get_content_disposition(),
            "cte": part["Content-Transfer-Encoding"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        })
    json.dump(out, sys.stdout)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--dir", required=True)
    s.add_argument("--refuse", action="append", help="answer RCPT TO with 550")
    s.add_argument("--defer-once", action="append", help="answer the first RCPT TO with 450")
    s.add_argument("--fail-data", type=int, default=0, help="answer the first N DATA with 451")
    s.add_argument("--auth", help="USER:PASSWORD, required")
    s.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    s.add_argument("--require-starttls", action="store_true")
    s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="implicit TLS")
    s.add_argument("--silent", action="store_true", help="accept and never answer")
    i = sub.add_parser("inspect")
    i.add_argument("file")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        inspect(args.file)


if __name__ == "__main__":
    main()
