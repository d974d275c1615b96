"""Which prefetched message a worker thread takes first (Dramatiq's actor priority: lower first).

Each queue's consumer prefetches up to twice as many messages as the process has threads, and the
threads take them from one shared line. In a connect storm the line is full of Boot and Status
batches; taken in arrival order, the MeterValues and live events behind them waited seconds. So
what operators watch live and what keeps a site under its grid limit goes first; then MeterValues
and the transactions starting and stopping (a start that waits delays its site's reallocation);
then the rest of what chargers say; bookkeeping nobody watches by the second last. Nothing starves:
every queue is consumed all the time, and a prefetched message is taken as soon as no more urgent
one waits.
"""

LIVE = 0  # the last hop of live events (notify), and site limits (reallocate_sites)
METERING = 10  # MeterValues and Start/StopTransaction: live energy, budgets, site shares
CHARGER_STATE = 20  # boots, statuses, the rest of what chargers say
BOOKKEEPING = 30  # billing, the command audit, CMS changes, local-list syncs
OUTSIDE = 40  # integration events and webhooks: at least once, seconds late is fine
