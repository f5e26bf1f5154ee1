vcl 4.1;
# Varnish (7.x) in front of gren-registry: a shared cache for the read side
# (bundles, package pages, version queries, listings, the event log) that
# caches exactly what the registry's headers allow and drops a package's
# objects when the registry purges it. tests/integration/varnish.rs runs this
# very file, changing only the backend's port, the purgers' address and the
# secret. See docs/OPERATIONS.md, "Put a CDN in front".
#
# The registry (GREN_REGISTRY_CACHE_PURGE_URLS=http://<this varnish>/.gren-registry/purge,
# GREN_REGISTRY_CACHE_PURGE_SECRET=<the secret below>) sends after every
# publish, revoke and privacy change
#     POST /.gren-registry/purge
#     Surrogate-Key: p:<author>/<project> listings
#     X-Purge-Secret: <secret>
# and every answer about a package carries `Surrogate-Key: p:<author>/<project>`
# (listings: `listings`), so one ban drops every cached URL of the package.
#
# Run with the registry's trusted proxies naming this host and the proxies in
# front of it (GREN_REGISTRY_TRUSTED_PROXIES), as each appends to
# X-Forwarded-For: the registry takes the first address from the right that
# is not a trusted proxy as the client.

import std;

backend registry {
    .host = "127.0.0.1";
    .port = "3000";
    .connect_timeout = 5s;
    # The registry answers long-polls (POST /session/fetch) within 30 s.
    .first_byte_timeout = 40s;
    .between_bytes_timeout = 30s;
}

# Who may purge, besides knowing the secret: the registry's own hosts.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.url == "/.gren-registry/purge" || req.method == "PURGE" || req.method == "BAN") {
        call gren_purge;
    }
    # Changes, git (which git's client sends with credentials, or not, as it
    # likes) and anything a person or a token asks: straight to the registry,
    # never stored, never answered from what someone else was given.
    if ((req.method != "GET" && req.method != "HEAD") || req.http.Authorization || req.url ~ "^/git(hub)?/") {
        return (pass);
    }
    # The registry sets no cookies and reads none.
    unset req.http.Cookie;
    return (hash);
}

# Purges need the secret and one of the purgers' addresses, on a connection
# straight from the purger.
#   POST /.gren-registry/purge with Surrogate-Key: keys -> bans every object
#                                                        tagged with one of them
#   PURGE <url>                                       -> drops that URL's objects
# (VCL's string comparison does not take constant time: the ACL keeps
# strangers from timing it.)
#
# Behind nginx, client.ip is nginx's, which is often the registry's own host
# and so a purger: the ACL alone would take a purge from anyone nginx
# forwards. Varnish has appended client.ip to X-Forwarded-For before
# vcl_recv, so a request straight from the registry carries one address
# there, and one that came through a proxy (nginx appends the client's) two
# or more: those are refused.
sub gren_purge {
    if (client.ip !~ purgers || req.http.X-Forwarded-For ~ "," || req.http.X-Purge-Secret != "CHANGE-ME-to-GREN_REGISTRY_CACHE_PURGE_SECRET") {
        return (synth(403, "Forbidden"));
    }
    if (req.method == "PURGE") {
        return (purge);
    }
    # Keys are the registry's: lower-case names, `:`, `/`, `-`, `_`; the
    # check keeps anything else out of the ban's regular expression.
    if (req.http.Surrogate-Key !~ "^[a-z0-9:/_-]+( [a-z0-9:/_-]+)*$") {
        return (synth(400, "Bad Surrogate-Key"));
    }
    # One ban for all the keys; [[:space:]] because a ban's argument ends
    # at a space.
    if (!std.ban("obj.http.Surrogate-Key ~ (^|[[:space:]])(" + regsuball(req.http.Surrogate-Key, " ", "|") + ")([[:space:]]|$)")) {
        return (synth(500, std.ban_error()));
    }
    return (synth(200, "Banned"));
}

sub vcl_backend_response {
    # What the registry did not mark public is not stored: answers to a
    # token, private packages, /user…, errors other than 404 and 410.
    # (Hit-for-miss for two minutes: later requests go straight on, and a
    # cacheable answer replaces it at once.)
    if (beresp.http.Cache-Control !~ "public" || beresp.http.Cache-Control ~ "(private|no-store)" || beresp.http.Set-Cookie) {
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # The TTL is the registry's s-maxage (Varnish prefers it over max-age;
    # the registry sends it only when it purges this cache, and vcl_deliver
    # keeps it from caches further on).
    # After it, serve the old copy for a minute while asking the registry
    # again (with If-None-Match: a 304 refreshes it), and keep it a day to
    # revalidate.
    set beresp.grace = 60s;
    set beresp.keep = 1d;
    return (deliver);
}

sub vcl_deliver {
    if (obj.uncacheable) {
        set resp.http.X-Cache = "PASS";
    } else if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # The tags are for this cache's bans, not for clients.
    unset resp.http.Surrogate-Key;
    # So is the day of s-maxage: it is this cache's, which the registry
    # purges. A shared cache behind it (a CDN, a company's proxy) is purged
    # by nobody, and gets the minute of max-age that clients get.
    if (resp.http.Cache-Control ~ "s-maxage") {
        set resp.http.Cache-Control = regsuball(resp.http.Cache-Control, "(^|,)[ \t]*s-maxage=[0-9]+[ \t]*(?=,|$)", "");
        set resp.http.Cache-Control = regsub(resp.http.Cache-Control, "^[ \t]*,[ \t]*", "");
    }
}
