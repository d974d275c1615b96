"""Which prefetched message a worker thread takes first (Dramatiq's actor priority: lower first).

Each queue's consumer prefetches up to twice as many messages as the process has threads, and the
threads take them from one shared line. Taken in arrival order, what operators watch live and what
keeps a site under its grid limit waited behind bookkeeping nobody watches by the second: billing,
the command audit, integration events. So live work goes first, then everything a charger says
(MeterValues, Start/Stop, Boot, Status: one level, since a start that waits delays its site's
reallocation and a status that waits freezes the dashboard's connector grid), bookkeeping after.
Nothing starves: every queue is consumed all the time, and a prefetched message is taken as soon
as no more urgent one waits.
"""

LIVE = 0  # the last hop of live events (notify), and site limits (reallocate_sites)
CHARGERS = 10  # what chargers said: MeterValues, transactions, boots, statuses
BOOKKEEPING = 30  # billing, the command audit, CMS changes, local-list syncs
OUTSIDE = 40  # integration events and webhooks: at least once, seconds late is fine
