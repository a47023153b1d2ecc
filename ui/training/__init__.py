"""The Training page: a wizard for new LoRA runs, the runs (a live view of each: loss, samples,
checkpoints, log), and the LoRA configs. Every widget key starts with "training." so nothing collides
with other pages.

``navigation`` holds the section selector's state and the ?run= link, ``choices`` the pickers the
sections share, ``param_form`` the form of every LoraParams field (the wizard's and the configs').
"""
