"""Calls: what is known about each (``records``), the live handle bots and the API drive
(``session``) and the controller's table of them (``registry``).

Outcome, as RingCX names its paths: Success once the final intent was handed over (RingCX's
BYE, or ours after ``call.final_bye_timeout``); Disconnected when the caller hung up first;
Failed otherwise (bot error, no final intent, rejected, lost Event Socket connection).
"""
