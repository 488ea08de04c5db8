"""
The twistd plugins of twisted_streaming, one module each, as Twisted keeps
its own in C{twisted.tap}: L{randomintegers <twisted_streaming.tap.randomintegers>}
for C{twistd random-integers} and L{streamproxy
<twisted_streaming.tap.streamproxy>} for C{twistd stream-proxy}.  Each holds
C{Options} and C{makeService}.
"""
