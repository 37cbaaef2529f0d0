"""
C{python -m amqptx}: the C{amqptx} command-line tool.
"""

from amqptx._cli import main

if __name__ == "__main__":
    main()
