"""What the Space, the bot, the terminal and the API share: job views, delivery cursors, the chat engine,
the mask preview, cost notes.

May import queue and every floor below it; never cli (nor bot/ or spaces/, which sit above it).
"""
