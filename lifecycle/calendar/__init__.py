"""The iCalendar channel: subscribable feeds, static exports and the `.ics` attachment of every email.

Three modules, each depending only on the ones above it:

- `ics`: pure event building. Rows and `at` in, RFC 5545 bytes out: no database, no clock. What an
  event says (UIDs, sequence, alarms, history, texts in the reader's language through
  `lifecycle.i18n`) is decided here.
- `feeds`: what a feed contains (queries: the milestones and releases of a product or of the
  releases a customer runs, acknowledgement links), which feeds a change affects, and the HTTP
  caching helpers (ETag, Last-Modified, 304) the web module uses.
- `exports`: the static files `products/<slug>.ics` and `customers/<key>.ics`, written atomically and
  only when their bytes change, refreshed by what changed.

The web routes (`lifecycle.web.calendars`), the CLI (`lifecycle calendar ...`), the email channel
and the tick call `feeds` and `exports`; nothing outside this package builds iCalendar text.
"""
