"""The Calendar page: the drag-and-drop calendar (board), the side panel beside it (the agenda, a post's
editor with its media picker and preview, or a new post for a clicked slot) and the Plans tab (persona,
plan request, plans and their posts). Every widget key starts with "calendar.".

``state`` holds the session keys the parts share, ``clock`` the studio's time zone and the component's
times.
"""
