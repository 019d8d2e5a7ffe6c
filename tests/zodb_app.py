"""A small shop, the application the ZODB interop tests run.

Its classes are stored by class path (``zodb_app.Product``...), so records
written by one database load in another. pytest puts ``tests/`` on
``sys.path`` (rootdir conftest, "prepend" import mode), which is how the
test modules import it as ``zodb_app``.

:func:`dump` turns an object graph into plain, comparable values, so that
two databases (ZODB's and objstore's) can be checked to show the same
objects without comparing oids.
"""
import persistent
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping


class OutOfStock(Exception):
    """An order asked for more than the shop has."""


class Product(persistent.Persistent):
    """A product on sale; ``stock`` is what two buyers fight over."""

    def __init__(self, sku, title, price, stock=0):
        self.sku = sku
        self.title = title
        self.price = price
        self.stock = stock
        self.tags = PersistentList()


class Customer(persistent.Persistent):

    def __init__(self, name, credit=0):
        self.name = name
        self.credit = credit
        self.orders = PersistentList()


class Order(persistent.Persistent):

    def __init__(self, number, customer, lines):
        self.number = number
        self.customer = customer    # a reference to the Customer
        self.lines = tuple(lines)   # (sku, quantity, unit price)
        self.status = 'placed'

    @property
    def total(self):
        return sum(quantity * price for _, quantity, price in self.lines)


class Shop(persistent.Persistent):
    """The application root object.

    ``products``, ``customers`` and ``orders`` are OOBTrees (concurrent
    inserts of different keys resolve in their buckets); ``order_count`` and
    ``sales`` are ``BTrees.Length`` counters (concurrent changes resolve);
    a product's ``stock`` and a customer's ``credit`` are plain attributes
    (concurrent changes conflict).
    """

    def __init__(self, name):
        self.name = name
        self.products = OOBTree()
        self.customers = OOBTree()
        self.orders = OOBTree()
        self.order_count = Length()
        self.sales = Length()
        self.settings = PersistentMapping(currency='EUR')

    def add_product(self, sku, title, price, stock=0):
        product = self.products[sku] = Product(sku, title, price, stock)
        return product

    def add_customer(self, name, credit=0):
        customer = self.customers[name] = Customer(name, credit)
        return customer

    def place_order(self, number, customer_name, items):
        """Order ``items`` (sku -> quantity) for a customer; takes stock,
        charges the customer's credit, counts the order and the sale."""
        customer = self.customers[customer_name]
        lines = []
        for sku, quantity in sorted(items.items()):
            product = self.products[sku]
            if product.stock < quantity:
                raise OutOfStock(sku)
            product.stock -= quantity
            lines.append((sku, quantity, product.price))
        order = Order(number, customer, lines)
        customer.credit -= order.total
        customer.orders.append(order)
        self.orders[number] = order
        self.order_count.change(1)
        self.sales.change(order.total)
        return order


class Item(persistent.Persistent):
    """A plain object with whatever attributes a test gives it."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


def build_shop(root, name='corner shop'):
    """Put a stocked shop with two customers under ``root['shop']``."""
    shop = root['shop'] = Shop(name)
    shop.add_product('apple', 'Apple', 2, stock=100)
    shop.add_product('pear', 'Pear', 3, stock=50)
    shop.add_product('fig', 'Fig', 5, stock=20).tags.extend(['dried', 'sweet'])
    shop.add_customer('ann', credit=1000)
    shop.add_customer('bob', credit=1000)
    return shop


def dump(obj):
    """``obj``'s graph as nested tuples, lists and dicts of plain values.

    A persistent object is shown as ``('obj', label, class path, state)``
    the first time the walk meets it and ``('ref', label)`` afterwards;
    labels count objects in walk order (mapping keys sorted), so the same
    graph dumps the same in any database, whatever the oids.
    """
    labels = {}
    return _dump(obj, labels)


def _dump(obj, labels):
    if isinstance(obj, persistent.Persistent):
        key = id(obj)
        if key in labels:
            return ('ref', labels[key])
        labels[key] = label = len(labels)
        cls = type(obj)
        return ('obj', label, '%s.%s' % (cls.__module__, cls.__qualname__),
                _dump_state(obj, labels))
    if isinstance(obj, dict):
        return {k: _dump(v, labels) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_dump(v, labels) for v in obj)
    return obj


def _dump_state(obj, labels):
    obj._p_activate()
    if isinstance(obj, Length):
        return obj()
    if isinstance(obj, OOBTree):
        return [(k, _dump(v, labels)) for k, v in obj.items()]
    if isinstance(obj, PersistentMapping):
        return {k: _dump(v, labels) for k, v in sorted(obj.items())}
    if isinstance(obj, PersistentList):
        return [_dump(v, labels) for v in obj]
    state = obj.__getstate__()
    if isinstance(state, dict):
        return {k: _dump(v, labels) for k, v in sorted(state.items())
                if not k.startswith('_v_')}
    return _dump(state, labels)
