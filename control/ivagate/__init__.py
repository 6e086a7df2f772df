"""ivagate: take RingCentral RingCX bot/IVA SIP calls into Python bots.

Travel of one call: kamailio/ (edge) -> freeswitch/ (media, parks the call) ->
ivagate.esl (Event Socket adapter) -> ivagate.controller -> ivagate.bots -> back out as SIP INFO.
"""

__version__ = "0.1.0"
