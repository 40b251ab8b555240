"""The password hash's cost, chosen for a workshop.

Django's default PBKDF2 cost (1.5 million rounds) takes 0.76 s of CPU per login on a 2-core
app host: a class of 20 logging in at once waited seconds for it. Workshop passwords are
generated (12 characters of a 31-letter alphabet, about 59 bits), logins are throttled per name
and address, and accounts live for a day. 150,000 rounds (about 0.08 s) still put an offline
guess of such a password out of reach. Hashes made at Django's cost keep working and are
re-hashed at this one on their next login.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class WorkshopPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 150_000
